"""salclass.saliency"""
